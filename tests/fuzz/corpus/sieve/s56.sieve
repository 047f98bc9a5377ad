require ["fileinto", "mailbox"];
if mailboxexists ["INBOX", "Nope"] { fileinto "Yes"; }