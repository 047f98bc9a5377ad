require "fileinto";
if header :contains "content-type" "multipart" { fileinto "Multipart"; }