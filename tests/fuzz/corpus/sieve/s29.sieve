require "fileinto";
if allof (header :contains "from" "alice", not header :contains "subject" "x") { fileinto "All"; }