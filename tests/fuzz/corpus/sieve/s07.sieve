require ["fileinto", "copy"];
fileinto :copy "Archive";