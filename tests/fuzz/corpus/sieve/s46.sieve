require "fileinto";
if header :contains "subject" "text:" { fileinto "X"; }
# a comment
/* and a
 block */