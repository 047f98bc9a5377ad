require "fileinto";
if header :comparator "i;octet" :is "subject" "weekly report: status green" { fileinto "Octet"; }