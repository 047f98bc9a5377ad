require ["fileinto", "variables"];
if address :matches :domain "from" "*.*" { set "d" "${1}"; fileinto "Dom-${d}"; }