require "reject";
reject "x"; reject "y";