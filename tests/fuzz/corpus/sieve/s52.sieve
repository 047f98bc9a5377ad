require ["editheader", "fileinto"];
addheader "X-Tag" "1";
if header :is "x-tag" "1" { fileinto "Tagged"; }