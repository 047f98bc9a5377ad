require "mailbox";
if true { keep :create; }