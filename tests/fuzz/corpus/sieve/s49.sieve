require "fileinto";
if header :contains "from" "Jörg" { fileinto "Joerg"; }