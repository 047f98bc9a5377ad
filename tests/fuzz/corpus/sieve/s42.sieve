require ["fileinto", "body"];
if body :contains "invoice" { fileinto "Invoices"; }