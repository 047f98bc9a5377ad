require "copy";
redirect :copy "other@example.net";