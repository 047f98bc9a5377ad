require ["fileinto", "subaddress"];
if address :detail "to" "news" { fileinto "News"; }