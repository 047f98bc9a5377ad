require ["fileinto", "variables"];
set :lower "f" "INBOX.Sub"; fileinto "${f}";