require "fileinto";
if true { fileinto "T"; stop; } fileinto "After";