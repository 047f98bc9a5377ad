require ["editheader", "fileinto"];
deleteheader :contains "subject" "report";
if exists "subject" { fileinto "Still"; }