require ["fileinto", "envelope"];
if envelope :domain "to" "example.org" { fileinto "EnvDom"; }