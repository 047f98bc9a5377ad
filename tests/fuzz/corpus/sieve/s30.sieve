require "fileinto";
if anyof (false, header :contains "subject" "release") { fileinto "Any"; }