require ["fileinto", "imap4flags"];
fileinto :flags ["\\Seen", "\\Answered"] "Read";