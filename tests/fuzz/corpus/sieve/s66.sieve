require "fileinto";
if address :is "to" "bob@example.org" { fileinto "EncTo"; }