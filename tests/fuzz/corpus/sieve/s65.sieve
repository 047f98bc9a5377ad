require "fileinto";
if header :is "subject" "hidden" { fileinto "Twice"; }
if header :is "subject" "=?utf-8?q?hidden?=" { fileinto "Once"; }