require "fileinto";
fileinto "Archive"; fileinto "Archive";