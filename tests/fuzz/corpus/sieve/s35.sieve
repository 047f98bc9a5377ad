require ["fileinto", "variables"];
if header :matches "subject" "*: *" { fileinto "By-${1}"; }