require ["fileinto", "imap4flags"];
addflag "\\Flagged"; fileinto "Flagged"; removeflag "\\Flagged"; keep;