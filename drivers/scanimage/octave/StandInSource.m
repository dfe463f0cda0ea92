classdef StandInSource < handle
    % Stand-in for the `src` a ScanImage user function receives (src.hSI is the ScanImage object).
    properties
        hSI
    end
    methods
        function obj = StandInSource()
            obj.hSI = StandInSI();
        end
    end
end
