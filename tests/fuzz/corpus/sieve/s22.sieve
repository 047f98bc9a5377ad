require ["fileinto", "envelope"];
if envelope :localpart :is "from" "mailer-daemon" { fileinto "Bounce"; }