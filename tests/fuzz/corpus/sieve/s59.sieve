require "reject";
discard; reject "x";