require ["relational"];
if header :value "zz" "subject" "a" { keep; }