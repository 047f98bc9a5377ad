require "fileinto";
if address :all :contains "to" "carol" { fileinto "Carol"; }