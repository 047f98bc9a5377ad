require "fileinto";
fileinto "Archive"; keep;