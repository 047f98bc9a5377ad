require "fileinto";
fileinto :flags "x" "Y";