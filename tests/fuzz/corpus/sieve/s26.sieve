require "fileinto";
if not exists "list-id" { fileinto "Direct"; }