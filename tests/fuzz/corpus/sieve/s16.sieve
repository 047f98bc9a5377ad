require "fileinto";
if header :matches "subject" "\\*" { fileinto "Star"; } else { fileinto "NoStar"; }