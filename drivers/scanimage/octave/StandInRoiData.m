classdef StandInRoiData < handle
    % Stand-in for scanimage.mroi.RoiData: the properties rtdecode_frameAcquired reads.
    properties
        zs = 0;            % z of each plane in imageData{c}, um
        channels = 1;      % channel number of each imageData{c}
        imageData = {};    % imageData{c}{z}: pixels x lines when transposed (ScanImage's default)
        transposed = true;
    end
end
