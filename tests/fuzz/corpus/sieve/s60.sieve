require "reject";
reject "x"; redirect "a@b.c";