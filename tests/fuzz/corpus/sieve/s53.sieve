require ["variables", "fileinto"];
set "a" "x"; set "b" "${a}${a}"; if string :is "${b}" "xx" { fileinto "Str"; }