require ["fileinto", "comparator-i;ascii-numeric"];
if header :comparator "i;ascii-numeric" :is "x-count" "42" { fileinto "FortyTwo"; }