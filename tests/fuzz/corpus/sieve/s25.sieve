require "fileinto";
if exists ["list-id", "x-count"] { fileinto "Lists"; }