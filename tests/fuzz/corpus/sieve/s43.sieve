require ["fileinto", "body"];
if body :contains "numbers are in" { fileinto "Numbers"; }