require "fileinto";
if header :matches "subject" "*status ???E?" { fileinto "Glob"; }