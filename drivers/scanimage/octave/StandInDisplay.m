classdef StandInDisplay < handle
    % Stand-in for hSI.hDisplay.
    properties
        lastStripeData = [];
    end
end
