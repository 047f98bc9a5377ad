require "vacation";
vacation :days 7 "I am away.";