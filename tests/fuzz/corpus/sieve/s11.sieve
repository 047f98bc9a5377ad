require "reject";
reject "Go away";