require ["fileinto", "envelope", "subaddress"];
if envelope :detail "to" "news" { fileinto "EnvNews"; }