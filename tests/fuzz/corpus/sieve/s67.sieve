require "fileinto";
if header :contains "from" "Ákob" { fileinto "Akob"; }