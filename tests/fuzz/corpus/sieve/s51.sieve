require ["variables"];
if header :matches "subject" "*i*" { set "x" "${2}"; }
redirect "${x}@b.c";