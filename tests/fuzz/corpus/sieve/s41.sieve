require ["fileinto", "imap4flags"];
setflag "\\Seen"; if hasflag "\\Seen" { fileinto "Has"; }