require "fileinto";
fileinto "Archive";