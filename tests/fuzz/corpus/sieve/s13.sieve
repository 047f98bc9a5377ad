require "fileinto";
if header :is "subject" "weekly report: status green" { fileinto "Exact"; }