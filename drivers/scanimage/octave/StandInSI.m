classdef StandInSI < handle
    % Stand-in for the ScanImage object hSI (only hDisplay is read).
    properties
        hDisplay
    end
    methods
        function obj = StandInSI()
            obj.hDisplay = StandInDisplay();
        end
    end
end
