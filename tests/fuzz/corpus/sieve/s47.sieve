require "vacation";
vacation :subject "Out" text:
I am out.
..dot-stuffed line
.
;