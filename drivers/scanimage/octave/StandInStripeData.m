classdef StandInStripeData < handle
    % Stand-in for scanimage.interfaces.StripeData (hSI.hDisplay.lastStripeData).
    properties
        frameNumberAcq = 1;      % frame number in the current acquisition, from 1
        frameNumberAcqMode = 1;
        frameTimestamp = 0;      % s since the acquisition started
        acqNumber = 1;
        zIdx = 1;                % index of this frame's plane in the z series (FastZ)
        channelNumbers = 1;      % the displayed channels (not necessarily those in roiData)
        roiData = {};            % one StandInRoiData per ROI (several in multi-ROI / mesoscope scans)
    end
end
