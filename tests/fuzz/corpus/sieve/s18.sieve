require "fileinto";
if address :localpart :is ["to", "cc"] "team" { fileinto "Team"; }