require ["fileinto", "mailbox"];
fileinto :create "Bench"; stop;