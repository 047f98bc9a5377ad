require ["editheader", "fileinto"];
addheader :last "X-New" "v";
deleteheader :index 1 :last "X-New";
if exists "x-new" { fileinto "Still"; }