require ["reject", "fileinto"];
fileinto "A"; reject "x";