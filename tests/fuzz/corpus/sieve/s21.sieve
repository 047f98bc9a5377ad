require ["fileinto", "subaddress"];
if address :user "to" "carol" { fileinto "CarolUser"; }